"""One module per verb: :mod:`.train` (train, reflow, distill), :mod:`.couple` (pairs from a
teacher), :mod:`.sample`, :mod:`.transport` (invert, translate, interpolate), :mod:`.presets` and
:mod:`.run` (the whole pipeline). The public entry is :mod:`rectflow.api`."""
