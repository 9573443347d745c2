"""Inputs: audio I/O, features, text tokenizer and normalisation, voice prompt features."""
