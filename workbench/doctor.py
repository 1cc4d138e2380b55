"""`workbench doctor`: which MLX backend and BLAS this process uses, versions, hardware, and readiness.

workbench doctor [--json]
"""

from __future__ import annotations

import sys

from workbench import console, runtime


def setup_arg_parser() -> console.Parser:
    parser = console.parser("doctor", "backend, versions, BLAS, hardware, readiness")
    parser.add_argument("--json", action="store_true")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = setup_arg_parser().parse_args(argv)
    info, problems = runtime.doctor()
    info["ready"] = not problems
    info["problems"] = problems
    if args.json:
        console.print_json(info)
    else:
        console.print_table({k: v for k, v in info.items() if k != "problems"})
        for problem in problems:
            print(f"problem: {problem}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(console.entry(main))
