// ELF image validation before dlopen.
//
// dlopen() maps the file and faults (SIGBUS, killing the process) when a
// segment lies beyond the end of a truncated file, so the loader checks first
// that the file is a complete ELF shared object of this machine's class and
// byte order: header magic, class, type, and that the program and section
// header tables and every PT_LOAD segment lie within the file. It then reads
// the dynamic section (untrusted input: every offset is bounds-checked) to
// refuse what dlopen would refuse with a confusing message or would abort the
// process for: an executable (PT_INTERP or DF_1_PIE) and a plugin that needs a
// sanitizer runtime this process does not have. Stateless, thread-safe.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace nk::runtime {

// Empty string when `path` looks loadable; otherwise the reason, e.g.
// "empty file", "not an ELF file", "truncated ELF file: segment ends at byte 16384 of 9000",
// "an executable, not a shared library: ..." or "built with ThreadSanitizer ...".
std::string check_elf_image(const std::filesystem::path& path);

// What the dynamic loader reads from an ELF file's program headers and dynamic section.
struct ElfDynamicInfo {
    std::vector<std::string> needed;  // DT_NEEDED entries, in file order
    bool has_interp = false;          // a PT_INTERP program header (executables have one)
    bool pie = false;                 // DF_1_PIE in DT_FLAGS_1 (a position-independent executable)
};

// Reads the DT_NEEDED entries and the executable markers of `path`. Empty string on success;
// otherwise why the file cannot be read (not ELF, truncated, offsets outside the file, ...).
std::string read_elf_dynamic(const std::filesystem::path& path, ElfDynamicInfo& info);

// The first entry of `needed` naming a sanitizer runtime (libasan.so*, libtsan.so*,
// libubsan.so*, liblsan.so*, libhwasan.so*) that this process has not loaded, with what to do,
// e.g. "built with ThreadSanitizer (needs libtsan.so.2), which this nkhost was not built with:
// ..."; empty when there is none.
std::string missing_sanitizer_runtime(const std::vector<std::string>& needed);

}  // namespace nk::runtime
