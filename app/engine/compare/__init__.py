"""Transfer learning against fine-tuning, measured side by side on the same split."""
