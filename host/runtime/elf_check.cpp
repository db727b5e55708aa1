#include "runtime/elf_check.hpp"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>

#include <cstring>
#include <fstream>
#include <string_view>
#include <vector>

#include <fmt/format.h>

namespace nk::runtime {

namespace {

#if UINTPTR_MAX == 0xffffffffffffffffULL
using Ehdr = Elf64_Ehdr;
using Phdr = Elf64_Phdr;
using Dyn = Elf64_Dyn;
constexpr unsigned char native_class = ELFCLASS64;
#else
using Ehdr = Elf32_Ehdr;
using Phdr = Elf32_Phdr;
using Dyn = Elf32_Dyn;
constexpr unsigned char native_class = ELFCLASS32;
#endif

// Upper bounds on what is read from an untrusted file (real plugins are far below them).
constexpr std::uint64_t kMaxDynamicBytes = 1 << 20;
constexpr std::uint64_t kMaxStringTableBytes = 16 << 20;

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

// The header and program headers of a validated image, and the open file.
struct Image {
    std::ifstream in;
    std::uint64_t file_size = 0;
    Ehdr eh{};
    std::vector<Phdr> phdrs;

    bool read_at(std::uint64_t offset, std::uint64_t size, void* out) {
        if (!within(offset, size, file_size))
            return false;
        in.clear();
        in.seekg(static_cast<std::streamoff>(offset));
        return static_cast<bool>(
            in.read(static_cast<char*>(out), static_cast<std::streamsize>(size)));
    }
};

// Checks that `path` is a complete ELF shared object of this machine and reads its headers.
// Empty string on success, otherwise the reason.
std::string open_image(const std::filesystem::path& path, Image& img) {
    std::error_code ec;
    img.file_size = std::filesystem::file_size(path, ec);
    if (ec)
        return "cannot read file: " + ec.message();
    if (img.file_size == 0)
        return "empty file";
    img.in.open(path, std::ios::binary);
    if (!img.in)
        return "cannot open file";
    std::ifstream& in = img.in;

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
    if (img.file_size < sizeof(Ehdr)) {
        return fmt::format("truncated ELF file: {} bytes, header needs {}", img.file_size,
                           sizeof(Ehdr));
    }
    Ehdr& eh = img.eh;
    if (!img.read_at(0, sizeof eh, &eh))
        return "cannot read ELF header";
    if (eh.e_type == ET_EXEC)
        return "an executable, not a shared library: build the plugin with "
               "add_library(<name> MODULE ...) (nk_add_plugin does)";
    if (eh.e_type != ET_DYN)
        return "not a shared object (ELF type is not ET_DYN)";
    if (eh.e_phnum == 0 || eh.e_phentsize != sizeof(Phdr))
        return "ELF file has no program headers";

    const std::uint64_t ph_size = std::uint64_t{eh.e_phnum} * eh.e_phentsize;
    if (!within(eh.e_phoff, ph_size, img.file_size)) {
        return fmt::format("truncated ELF file: program headers end at byte {} of {}",
                           eh.e_phoff + ph_size, img.file_size);
    }
    if (eh.e_shoff != 0) {
        const std::uint64_t sh_size = std::uint64_t{eh.e_shnum} * eh.e_shentsize;
        if (!within(eh.e_shoff, sh_size, img.file_size)) {
            return fmt::format("truncated ELF file: section headers end at byte {} of {}",
                               eh.e_shoff + sh_size, img.file_size);
        }
    }
    img.phdrs.resize(eh.e_phnum);
    if (!img.read_at(eh.e_phoff, ph_size, img.phdrs.data()))
        return "cannot read ELF program headers";
    for (const Phdr& ph : img.phdrs) {
        if (ph.p_type != PT_LOAD && ph.p_type != PT_DYNAMIC)
            continue;
        if (!within(ph.p_offset, ph.p_filesz, img.file_size)) {
            return fmt::format("truncated ELF file: segment ends at byte {} of {}",
                               ph.p_offset + ph.p_filesz, img.file_size);
        }
    }
    return {};
}

// The file offset of virtual address `addr`, through the PT_LOAD segment holding it; false
// when no segment maps it from the file.
bool file_offset_of(const Image& img, std::uint64_t addr, std::uint64_t& offset) {
    for (const Phdr& ph : img.phdrs) {
        if (ph.p_type != PT_LOAD || addr < ph.p_vaddr || addr - ph.p_vaddr >= ph.p_filesz)
            continue;
        offset = ph.p_offset + (addr - ph.p_vaddr);
        return true;
    }
    return false;
}

std::string read_dynamic(Image& img, ElfDynamicInfo& info) {
    info = {};
    const Phdr* dynamic = nullptr;
    for (const Phdr& ph : img.phdrs) {
        if (ph.p_type == PT_INTERP)
            info.has_interp = true;
        if (ph.p_type == PT_DYNAMIC && dynamic == nullptr)
            dynamic = &ph;
    }
    if (dynamic == nullptr)
        return {};  // nothing needed (a static shared object); dlopen decides
    if (dynamic->p_filesz > kMaxDynamicBytes)
        return fmt::format("ELF dynamic section too large ({} bytes)", dynamic->p_filesz);
    std::vector<Dyn> entries(dynamic->p_filesz / sizeof(Dyn));
    if (!entries.empty() &&
        !img.read_at(dynamic->p_offset, entries.size() * sizeof(Dyn), entries.data())) {
        return "cannot read the ELF dynamic section";
    }
    std::uint64_t strtab = 0, strsz = 0;
    bool has_strtab = false;
    std::vector<std::uint64_t> needed;
    for (const Dyn& d : entries) {
        if (d.d_tag == DT_NULL)
            break;
        switch (d.d_tag) {
            case DT_NEEDED:
                needed.push_back(d.d_un.d_val);
                break;
            case DT_STRTAB:
                strtab = d.d_un.d_ptr;
                has_strtab = true;
                break;
            case DT_STRSZ:
                strsz = d.d_un.d_val;
                break;
            case DT_FLAGS_1:
                info.pie = info.pie || (d.d_un.d_val & DF_1_PIE) != 0;
                break;
            default:
                break;
        }
    }
    if (needed.empty())
        return {};
    if (!has_strtab || strsz == 0)
        return "ELF dynamic section has DT_NEEDED entries but no string table";
    if (strsz > kMaxStringTableBytes)
        return fmt::format("ELF dynamic string table too large ({} bytes)", strsz);
    std::uint64_t offset = 0;
    if (!file_offset_of(img, strtab, offset) || !within(offset, strsz, img.file_size))
        return "ELF dynamic string table lies outside the file";
    std::string table(strsz, '\0');
    if (!img.read_at(offset, strsz, table.data()))
        return "cannot read the ELF dynamic string table";
    for (const std::uint64_t at : needed) {
        if (at >= table.size())
            return "ELF DT_NEEDED entry points outside the string table";
        const auto end = table.find('\0', at);
        if (end == std::string::npos)
            return "ELF DT_NEEDED name is not terminated";
        info.needed.push_back(table.substr(at, end - at));
    }
    return {};
}

struct SanitizerRuntime {
    std::string_view library;  // file name prefix, e.g. "libasan.so"
    std::string_view name;
    std::string_view flag;
    const char* init_symbol;  // defined when the runtime is linked statically; may be null
};
constexpr SanitizerRuntime kSanitizers[] = {
    {"libasan.so", "AddressSanitizer", "-fsanitize=address", "__asan_init"},
    {"libtsan.so", "ThreadSanitizer", "-fsanitize=thread", "__tsan_init"},
    {"libubsan.so", "UndefinedBehaviorSanitizer", "-fsanitize=undefined", nullptr},
    {"liblsan.so", "LeakSanitizer", "-fsanitize=leak", nullptr},
    {"libhwasan.so", "HWAddressSanitizer", "-fsanitize=hwaddress", "__hwasan_init"},
};

bool starts_with(std::string_view s, std::string_view prefix) {
    return s.substr(0, prefix.size()) == prefix;
}

std::string_view base_name(std::string_view path) {
    const auto slash = path.rfind('/');
    return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

// Whether a library whose file name starts with `prefix` is loaded in this process.
bool process_has_library(std::string_view prefix) {
    struct Search {
        std::string_view prefix;
        bool found = false;
    } search{prefix};
    ::dl_iterate_phdr(
        [](dl_phdr_info* info, std::size_t, void* data) {
            auto* s = static_cast<Search*>(data);
            if (info->dlpi_name != nullptr && starts_with(base_name(info->dlpi_name), s->prefix))
                s->found = true;
            return s->found ? 1 : 0;
        },
        &search);
    return search.found;
}

}  // namespace

std::string read_elf_dynamic(const std::filesystem::path& path, ElfDynamicInfo& info) {
    Image img;
    if (std::string bad = open_image(path, img); !bad.empty())
        return bad;
    return read_dynamic(img, info);
}

std::string missing_sanitizer_runtime(const std::vector<std::string>& needed) {
    for (const std::string& lib : needed) {
        for (const SanitizerRuntime& s : kSanitizers) {
            if (!starts_with(lib, s.library))
                continue;
            if (process_has_library(s.library) ||
                (s.init_symbol != nullptr && ::dlsym(RTLD_DEFAULT, s.init_symbol) != nullptr)) {
                break;  // the host has this runtime
            }
            return fmt::format(
                "built with {} (needs {}), which this nkhost was not built with: loading it "
                "would abort the process; rebuild the plugin without {} (or run an nkhost "
                "built with it)",
                s.name, lib, s.flag);
        }
    }
    return {};
}

std::string check_elf_image(const std::filesystem::path& path) {
    Image img;
    if (std::string bad = open_image(path, img); !bad.empty())
        return bad;
    ElfDynamicInfo info;
    if (std::string bad = read_dynamic(img, info); !bad.empty())
        return bad;
    if (info.pie || info.has_interp) {
        return "an executable, not a shared library: build the plugin with "
               "add_library(<name> MODULE ...) (nk_add_plugin does)";
    }
    return missing_sanitizer_runtime(info.needed);
}

}  // namespace nk::runtime
