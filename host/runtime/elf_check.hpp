// ELF image validation before dlopen.
//
// dlopen() maps the file and faults (SIGBUS, killing the process) when a
// segment lies beyond the end of a truncated file, so the loader checks first
// that the file is a complete ELF shared object of this machine's class and
// byte order: header magic, class, type, and that the program and section
// header tables and every PT_LOAD segment lie within the file. Stateless,
// thread-safe.
#pragma once

#include <filesystem>
#include <string>

namespace nk::runtime {

// Empty string when `path` looks loadable; otherwise the reason, e.g.
// "empty file", "not an ELF file" or "truncated ELF file: segment ends at byte 16384 of 9000".
std::string check_elf_image(const std::filesystem::path& path);

}  // namespace nk::runtime
