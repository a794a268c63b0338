"""Training a site detector from the app: the New-detector panel and what it runs.

- :mod:`app.training.folders`: what is in a dropped folder and what is wrong with the data
  (pure, no Qt);
- :mod:`app.training.options`: methods from the engine's registry, their options and presets;
- :mod:`app.training.job`: one training job (train ▸ export ▸ verify ▸ validate ▸ register)
  run by the engine in separate processes;
- :mod:`app.training.panel` and its widgets: the panel itself.
"""
