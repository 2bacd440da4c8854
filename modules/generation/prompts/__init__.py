"""Prompts: A1111's prompt syntax (weights, editing, alternation, BREAK), styles, and the text
conditioning of each model family."""
