#include "cli.hpp"

int main(int argc, char** argv) { return rproxy::cli::run_cli(argc, argv); }
