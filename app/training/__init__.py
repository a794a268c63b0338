"""Training a site detector from the app: the New-detector panel and what it runs.

- :mod:`app.training.folders`: what is in a dropped folder and what is wrong with the data
  (pure, no Qt);
- :mod:`app.training.options`: the methods, their data roles, options and presets, as the
  engine the app runs describes them (`[engine] methods --json`; no Qt), and the `train`
  command lines;
- :mod:`app.training.engine_check`: the engine's `train --check` of the data and settings, in
  an engine process, debounced;
- :mod:`app.training.job`: one training job (train ▸ export ▸ verify ▸ validate ▸ register)
  run by the engine in separate processes;
- :mod:`app.training.panel` and its widgets: the panel itself.
"""
