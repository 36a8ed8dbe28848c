"""The micro world: a character-level chat model this project trains from scratch and ships in micro/model.

It follows instructions of a small language of string programs (fastslow.micro.language), writes better
instructions from failures with feedback (so it can act as its own reflection LM), and runs fast on CPU.
"""
