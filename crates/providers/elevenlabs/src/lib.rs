//! WaaV Gateway providers for elevenlabs (in progress).
