"""The X/Y/Z plot (``scripts/xyz_grid.py``): its axes (:mod:`.axes`), A1111's value syntax (:mod:`.values`),
its arguments (:mod:`.args`) and the grid loop (:mod:`.plot`)."""
