//! WaaV Gateway providers for OpenAI (in progress).
