"""The trainer tests use the shared model fixtures of tests/conftest.py (`tiny_model_dir`,
`tiny_sft`, `single_torch_thread`), built once per test run."""
