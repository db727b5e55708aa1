// Writes docs/configuration.md (the configuration reference generated from the key table) to
// the file named by argv[1], or to stdout.
#include <fstream>
#include <iostream>

#include "config/config.hpp"

int main(int argc, char** argv) {
    if (argc > 1) {
        std::ofstream out(argv[1], std::ios::binary | std::ios::trunc);
        out << nk::config::markdown_reference();
        return out ? 0 : 1;
    }
    std::cout << nk::config::markdown_reference();
    return std::cout ? 0 : 1;
}
