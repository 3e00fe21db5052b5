//! WaaV Gateway providers for ibm (in progress).
