// The Rust static library registers its routines in R_init_redq_extendr();
// calling it from here keeps the linker from dropping the library.
void R_init_redq_extendr(void *dll);

void R_init_redq(void *dll) {
    R_init_redq_extendr(dll);
}
