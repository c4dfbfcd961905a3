"""L4, the simulation twin: behavioral models, composition, what-if, calibration, prediction vs actual.

A model definition (YAML, `definition.py`) is compiled into straight-line Python (`expr.py`,
one module per model kind) and the engine (`engine.py`) runs the composed step in one generated
loop: on plain floats for one device, on NumPy arrays for a fleet or a sweep, so one code path
serves both. Nothing here prints; the CLI (`metaforge/cli/sim.py`) renders.
"""
