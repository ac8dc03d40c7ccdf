"""A whole chot site as real processes, for the end-to-end tests and the e2e benchmark.

- `passes`: the pass mix people hold up (valid, expired, forged, revoked, not a chot pass);
- `proxy`: `TcpProxy`, a cuttable network between one unit and the broker;
- `device_proc`: `DeviceProc`, a scanner unit process fed through its keyboard-wedge pipe;
- `site`: `E2ESite`, provisioned by the ops tool and run as processes, with the central
  store's invariants;
- `clock_unit`: a unit whose wall clock and sync state follow a file (`python -m
  harness.e2e.clock_unit`);
- `rounds`: one round of scanning and the checks every e2e run ends on.
"""
