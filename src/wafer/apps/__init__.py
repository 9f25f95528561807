"""What a user runs on the trained pipeline: the ``wafer`` command line and the Gradio demo."""
