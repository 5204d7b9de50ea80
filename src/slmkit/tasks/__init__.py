"""What users want done with a small model: classify, summarize, extract, embed."""
