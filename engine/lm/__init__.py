"""The Llasa language model: speech tokens, the prompt, sampling, loading, the fast decoder, the reference loop."""
