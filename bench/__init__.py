"""The bench suite: ``python -m bench`` measures the gateway against bare ceilings on this machine.

Each module measures one thing; :mod:`bench.__main__` runs them in order and
:mod:`bench.report` prints one table of figures and ratios (with each target and
PASS/FAIL), writes a JSON document and a chart. ``docs/performance.md`` shows the
latest run and how to read it.
"""
