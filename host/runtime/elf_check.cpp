#include "runtime/elf_check.hpp"

#include <elf.h>

#include <cstring>
#include <fstream>
#include <vector>

#include <fmt/format.h>

namespace nk::runtime {

namespace {

#if UINTPTR_MAX == 0xffffffffffffffffULL
using Ehdr = Elf64_Ehdr;
using Phdr = Elf64_Phdr;
constexpr unsigned char native_class = ELFCLASS64;
#else
using Ehdr = Elf32_Ehdr;
using Phdr = Elf32_Phdr;
constexpr unsigned char native_class = ELFCLASS32;
#endif

bool native_little_endian() {
    const std::uint16_t one = 1;
    unsigned char b;
    std::memcpy(&b, &one, 1);
    return b == 1;
}

// True when [offset, offset + size) lies within a file of `file_size` bytes (no overflow).
bool within(std::uint64_t offset, std::uint64_t size, std::uint64_t file_size) {
    return offset <= file_size && size <= file_size - offset;
}

}  // namespace

std::string check_elf_image(const std::filesystem::path& path) {
    std::error_code ec;
    const std::uint64_t file_size = std::filesystem::file_size(path, ec);
    if (ec)
        return "cannot read file: " + ec.message();
    if (file_size == 0)
        return "empty file";
    std::ifstream in(path, std::ios::binary);
    if (!in)
        return "cannot open file";

    unsigned char ident[EI_NIDENT] = {};
    if (!in.read(reinterpret_cast<char*>(ident), EI_NIDENT) ||
        std::memcmp(ident, ELFMAG, SELFMAG) != 0) {
        return "not an ELF file";
    }
    if (ident[EI_CLASS] != native_class) {
        return native_class == ELFCLASS64 ? "ELF class mismatch: 32-bit file, 64-bit host"
                                          : "ELF class mismatch: 64-bit file, 32-bit host";
    }
    if (ident[EI_DATA] != (native_little_endian() ? ELFDATA2LSB : ELFDATA2MSB)) {
        return "ELF byte order does not match the host";
    }
    if (file_size < sizeof(Ehdr)) {
        return fmt::format("truncated ELF file: {} bytes, header needs {}", file_size,
                           sizeof(Ehdr));
    }
    Ehdr eh{};
    in.seekg(0);
    if (!in.read(reinterpret_cast<char*>(&eh), sizeof eh))
        return "cannot read ELF header";
    if (eh.e_type != ET_DYN)
        return "not a shared object (ELF type is not ET_DYN)";
    if (eh.e_phnum == 0 || eh.e_phentsize != sizeof(Phdr))
        return "ELF file has no program headers";

    const std::uint64_t ph_size = std::uint64_t{eh.e_phnum} * eh.e_phentsize;
    if (!within(eh.e_phoff, ph_size, file_size)) {
        return fmt::format("truncated ELF file: program headers end at byte {} of {}",
                           eh.e_phoff + ph_size, file_size);
    }
    if (eh.e_shoff != 0) {
        const std::uint64_t sh_size = std::uint64_t{eh.e_shnum} * eh.e_shentsize;
        if (!within(eh.e_shoff, sh_size, file_size)) {
            return fmt::format("truncated ELF file: section headers end at byte {} of {}",
                               eh.e_shoff + sh_size, file_size);
        }
    }
    std::vector<Phdr> phdrs(eh.e_phnum);
    in.seekg(static_cast<std::streamoff>(eh.e_phoff));
    if (!in.read(reinterpret_cast<char*>(phdrs.data()), static_cast<std::streamsize>(ph_size))) {
        return "cannot read ELF program headers";
    }
    for (const Phdr& ph : phdrs) {
        if (ph.p_type != PT_LOAD && ph.p_type != PT_DYNAMIC)
            continue;
        if (!within(ph.p_offset, ph.p_filesz, file_size)) {
            return fmt::format("truncated ELF file: segment ends at byte {} of {}",
                               ph.p_offset + ph.p_filesz, file_size);
        }
    }
    return {};
}

}  // namespace nk::runtime
