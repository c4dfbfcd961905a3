"""Engineering constraints: a small, safe, unit-aware expression language and its engine.

`expr` parses and type-checks an expression (never Python eval); `evaluate` computes it on a
graph state with SI base values and says which entities contributed; `engine` finds the
constraints a change can affect and gives their verdicts.
"""
