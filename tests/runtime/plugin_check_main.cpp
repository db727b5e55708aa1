// nk_plugin_check DIR DATA_DIR: runtime::run_check on DIR (what `nkhost check` does),
// for the SDK package test.
#include <iostream>

#include "runtime/check.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::cerr << "usage: nk_plugin_check MODULE_DIR DATA_DIR\n";
        return 2;
    }
    nk::runtime::Options o;
    o.path = argv[1];
    o.data_dir = argv[2];
    return nk::runtime::run_check(o, std::cout);
}
