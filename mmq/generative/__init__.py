"""Generative retrieval on semantic IDs: a sequence model generates the next item's SID, decoded
with trie-constrained beam search so every generated ID names a real item."""
