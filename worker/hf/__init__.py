"""Hugging Face models for the built-in backend: refs, choosing the files, asking the Hub.

``hf.co/OWNER/REPO[:QUANT]`` (also ``hf://…`` and ``huggingface.co/…`` URLs pasted from a browser)
names a GGUF repository on the Hub. :mod:`.refs` parses such refs (pure), :mod:`.select` picks the
quantisation, split parts and ``mmproj`` file from the repository's file list (pure), and
:mod:`.resolve` asks the Hub with ``huggingface_hub`` for that list, each file's LFS SHA-256 and
the commit to pin the download to. The download itself is the worker's own verified transfer
(:mod:`worker.installs.download`); ``huggingface_hub`` is imported only when a Hugging Face ref is
actually resolved.
"""
