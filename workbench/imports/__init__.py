"""Other tools' result files (GuideLLM, AIPerf, `vllm bench serve`) read into the workbench's rows, with the
metrics recomputed under docs/metrics.md's definitions where the file has per-request timing.

- `readers`: one reader per tool -> `Imported` (levels of rows in our schema, the tool's own summaries);
- `importer`: `workbench import FILE --tool T [--name N]` writes `outputs/imports/<name>/`; `load_import`.

Layer: beside `experiments` (it uses `measure.timed`, `endpoint.slo` and `results.store`); `present` reads it.
"""
