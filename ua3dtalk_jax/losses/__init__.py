"""Losses: image reconstruction terms (Eq. 13-14) and regularisers."""
