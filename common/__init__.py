"""The bottom layer every package may import: model files from the Hub or a local folder (`hub.py`) and
image resizing (`imaging.py`). It imports nothing of ours and nothing heavy at module level."""
