"""Other tools' result files (GuideLLM, AIPerf, `vllm bench serve`) read into the workbench's rows, with the
metrics recomputed under docs/metrics.md's definitions where the file has per-request timing.

- `readers`: one reader per tool -> `Imported` (levels of rows in our schema, the tool's own summaries);
- `importer`: `workbench import FILE --tool T [--name N]` writes `outputs/imports/<name>/`.

Layer: an app (a command): it uses `measure.timed` and `results`; the report reads imports back through
`results.imported`, never through this package.
"""
