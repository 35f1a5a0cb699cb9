"""The supervised half: SFT sets built by rejection sampling (`sample.py`) and the SFT trainer."""
