"""The micro world's model factory: a character-level chat model this project trains from scratch (corpus, tokenizer,
pretraining, evaluation) and ships in micro/model and micro/model-v4 (their short names: fastslow.models).

It follows instructions of a small language of string programs (fastslow.tasks.micro_language), writes better
instructions from failures with feedback (so it can act as its own reflection LM), and runs fast on CPU.
"""
