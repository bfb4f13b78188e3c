"""The fidelity corpus: every kind of object pg_dump handles, in SQL files beside this module,
and a way to take a server down in a form that shows what a restore changed (image.py)."""
