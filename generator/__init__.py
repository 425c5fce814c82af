"""generator: the suggestion generator that serving runs and the trainer trains.

Owns
- the GQR unified prompt template and the per-suggestion factorization (`generator.prompt`);
- the parser of model output into shown, tool-tagged suggestions (`generator.parser`);
- loading a local checkpoint and LoRA adapter, offline, under the one process-wide
  model-load lock `MODEL_LOAD_LOCK` that every model load in the process holds (serving's
  hot swap, the trainer, retrieval's encoder) (`generator.loading`);
- the `Generator` (render → sample → parse → link) and its decoding (`generator.generator`);
- its settings: `GeneratorConfig`, `DecodingConfig`, `BootstrapSFTConfig` (`generator.config`;
  nested in the user's configuration as `trainer.generator`).

May import: `contracts`, `toolrec` core (errors, durable helpers) and third-party libraries;
tool linking comes in as an object with `link_many` (`generator.parser.ToolLinker`), so it
never imports `retrieval`, `trainer`, `streams`, `lakehouse`, `serving` or `loop`. Heavy
libraries (torch, transformers, peft) are imported inside functions, never at import time:
`streams` imports `generator.prompt` and `retrieval` imports `generator.loading`.
"""
