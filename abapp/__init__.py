"""UI pieces of the A/B listening app (``app.py``): one module per tab plus shared state and plots.

Nothing here loads a model or touches gradio at import time beyond importing it; ``app.main``
loads the pipeline once and hands it to :func:`abapp.ui.build_ui`.
"""

APP_VERSION = "0.1.0"
