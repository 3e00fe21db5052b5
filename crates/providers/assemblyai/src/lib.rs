//! WaaV Gateway providers for assemblyai (in progress).
