"""loop: the closed loop end to end — simulated users, `toolrec demo`, and experiments.

Owns
- the user simulator (`loop.simulator`, `loop.population`, `loop.intents`, `loop.needs`):
  a population of simulated users with hidden intents, activity levels, position bias and
  tool execution, deterministic for a seed, whose ground truth never reaches the system;
- the traffic driver (`loop.traffic`, `loop.client`): simulated users against the real API,
  feedback through the real telemetry path (`toolrec simulate`);
- ground-truth metrics per model version (`loop.metrics`) and the HTML report
  (`loop.report`);
- the demo (`loop.stack`, `loop.demo`): broker, Faust worker, Delta sink, API server and
  retraining daemon as owned subprocesses, rounds of traffic with refreshes and hot-swaps in
  between (`toolrec demo`);
- the calibration experiment (`loop.experiment`, `toolrec experiment calibration`).

May import `contracts`, `generator` and every stage's public functions (`infra`, `streams`,
`lakehouse`, `retrieval`, `trainer`) and talk to `serving` only over HTTP. No stage imports
`loop`. Heavy libraries (torch, transformers) are imported inside the functions that need
them.
"""
