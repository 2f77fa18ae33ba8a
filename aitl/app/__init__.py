"""The composition root: the only place the product rooms meet. It wires their services and
ports (``wiring``), serves the web app, runs the worker and scheduler, the CLI and the demo."""
