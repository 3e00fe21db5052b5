//! WaaV Gateway providers for cartesia (in progress).
