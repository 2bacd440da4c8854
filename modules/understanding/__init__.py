"""Image understanding: describing, classifying and (later) asking about images."""
