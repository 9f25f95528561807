"""The vocabulary every part of the library shares: the 9 classes, one-line errors, atomic
files, ragged maps. Imports nothing else of ours."""
