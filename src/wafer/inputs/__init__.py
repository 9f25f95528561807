"""The map files that ``wafer predict`` and the demo read (.npy, .npz, .png, folders, trusted
pickles), read lazily with their sizes capped from the headers."""
