"""The pure functions behind each lesson's interactive figures.

Each module pairs ``compute(**params) -> state`` with ``draw(state) -> figure``;
:class:`course_lib.widgets.Interactive` binds them to sliders, and the tests
call them directly.
"""
