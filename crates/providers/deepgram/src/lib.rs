//! WaaV Gateway providers for deepgram (in progress).
