//! Links Intel MKL (static, LP64, Intel OpenMP) from `$MKLROOT` for candle's `mkl` feature;
//! no Rust items: candle declares the MKL functions it calls.
#![no_std]
