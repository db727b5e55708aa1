// The loader against real plugins: discovery, ELF validation, ABI checks,
// InitModule failures (one fixture per failure mode), private copies.
#include <doctest/doctest.h>

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "nk/sdk.h"
#include "runtime/check.hpp"
#include "runtime/elf_check.hpp"
#include "runtime/module_copies.hpp"
#include "runtime/runtime.hpp"
#include "runtime_support.hpp"

using namespace nk;
using namespace nk::test;

namespace {

runtime::Options options_for(const TempDir& tmp) {
    runtime::Options o;
    o.path = (tmp / "modules").string();
    o.data_dir = tmp.path().string();
    o.node = "node-a";
    o.env = {{"region", "eu"}};
    return o;
}

// Loads exactly one fixture; returns the load status.
Status load_one(const std::string& name, const TempDir& tmp, runtime::Runtime*& out_rt,
                std::unique_ptr<runtime::Runtime>& holder) {
    install(tmp / "modules", {fixture(name)});
    holder = std::make_unique<runtime::Runtime>(options_for(tmp), runtime::Dependencies{});
    out_rt = holder.get();
    return holder->load_all();
}

std::string expected_line(const TempDir& tmp, const std::string& file, const std::string& why) {
    return "Failed to load runtime module " + (tmp / "modules" / file).string() + ": " + why;
}

std::size_t private_copies(const TempDir& tmp) {
    std::size_t n = 0;
    std::error_code ec;
    for (auto it = fs::directory_iterator(tmp / ".modules", ec);
         !ec && it != fs::directory_iterator(); ++it)
        ++n;
    return n;
}

}  // namespace

TEST_CASE("discovery: *.so recursively, lexical order, hidden entries and other files skipped") {
    TempDir tmp;
    fs::create_directories(tmp / "m/b");
    fs::create_directories(tmp / "m/.hidden_dir");
    for (const char* f : {"m/z.so", "m/a.so", "m/b/c.SO", "m/.hidden.so", "m/.hidden_dir/d.so",
                          "m/readme.txt", "m/x.so.bak", "m/b/notes.md"}) {
        std::ofstream(tmp.path() / f) << "x";
    }
    auto files = runtime::find_module_files(tmp / "m");
    REQUIRE(files.size() == 3);
    CHECK(files[0] == tmp / "m/a.so");
    CHECK(files[1] == tmp / "m/b/c.SO");
    CHECK(files[2] == tmp / "m/z.so");
    CHECK(runtime::find_module_files(tmp / "missing").empty());
}

TEST_CASE("ELF check: good, not ELF, empty, truncated") {
    TempDir tmp;
    CHECK(runtime::check_elf_image(fixture("events_good")) == "");
    std::ofstream(tmp / "text.so") << "hello, not a library\n";
    CHECK(runtime::check_elf_image(tmp / "text.so") == "not an ELF file");
    std::ofstream(tmp / "empty.so").flush();
    CHECK(runtime::check_elf_image(tmp / "empty.so") == "empty file");
    fs::copy_file(fixture("events_good"), tmp / "cut.so");
    fs::resize_file(tmp / "cut.so", fs::file_size(tmp / "cut.so") / 2);
    CHECK(runtime::check_elf_image(tmp / "cut.so").rfind("truncated ELF file: ", 0) == 0);
    fs::copy_file(fixture("events_good"), tmp / "header_only.so");
    fs::resize_file(tmp / "header_only.so", 40);
    CHECK(runtime::check_elf_image(tmp / "header_only.so").rfind("truncated ELF file", 0) == 0);
}

TEST_CASE(
    "a good plugin loads; its registrations are published; the private copy lives under data_dir") {
    TempDir tmp;
    std::unique_ptr<runtime::Runtime> holder;
    runtime::Runtime* rt = nullptr;
    REQUIRE(load_one("events_good", tmp, rt, holder).is_ok());
    CHECK(rt->module_count() == 1);
    CHECK(rt->has_rpc("echo"));
    CHECK(rt->has_rpc("ECHO"));  // ids are case-insensitive
    CHECK(rt->has_after("UpdateAccount"));
    CHECK(rt->has_after("AuthenticateDevice"));
    CHECK_FALSE(rt->has_before("UpdateAccount"));
    CHECK(rt->has_handlers(events::Kind::custom));
    CHECK(rt->has_handlers(events::Kind::session_start));
    CHECK(rt->handlers()->custom.size() == 1);
    auto reports = rt->reports();
    REQUIRE(reports.size() == 1);
    CHECK(reports[0].loaded);
    CHECK(reports[0].abi_major == NK_ABI_VERSION_MAJOR);
    CHECK(private_copies(tmp) == 1);
    holder.reset();
    CHECK(private_copies(tmp) == 0);  // unloaded: copy removed
}

TEST_CASE("runtime.path is created when missing and an empty directory loads nothing") {
    TempDir tmp;
    LogCapture logs("info");
    runtime::Runtime rt(options_for(tmp), {});
    CHECK(rt.load_all().is_ok());
    CHECK(fs::is_directory(tmp / "modules"));
    CHECK(logs.contains("runtime.path " + (tmp / "modules").string() +
                        " did not exist; created it (no plugins to load)"));
    CHECK(rt.module_count() == 0);
    CHECK_FALSE(rt.has_rpc("echo"));
}

TEST_CASE("each failure mode fails startup with one line naming the file and the reason") {
    struct Case {
        std::string fixture;
        std::string reason;
    };
    const std::string abi =
        std::to_string(NK_ABI_VERSION_MAJOR) + "." + std::to_string(NK_ABI_VERSION_MINOR);
    const std::vector<Case> cases = {
        {"no_init", "missing InitModule function"},
        {"no_abi",
         "missing ABI info symbol nk_plugin_abi (not built with nk/sdk.h NK_PLUGIN_ABI())"},
        {"abi_major", "ABI version mismatch: plugin built for ABI " +
                          std::to_string(NK_ABI_VERSION_MAJOR + 1) + ".0, host speaks ABI " + abi +
                          " (major versions must match)"},
        {"abi_minor", "ABI version mismatch: plugin built for ABI " +
                          std::to_string(NK_ABI_VERSION_MAJOR) + "." +
                          std::to_string(NK_ABI_VERSION_MINOR + 7) + ", host speaks ABI " + abi +
                          " (plugin needs a newer host)"},
        {"init_error", "InitModule returned error code 14: leaderboard service unreachable"},
        {"init_throws", "InitModule returned error code 13: InitModule threw: config file missing"},
        {"init_throws_raw", "InitModule threw an exception: raw throw from InitModule"},
        {"helper_lib",
         "not a plugin (exports neither nk_plugin_abi nor InitModule): move it out of "
         "runtime.path or into a hidden folder (a name starting with '.')"},
        {"pie_exe",
         "an executable, not a shared library: build the plugin with add_library(<name> MODULE "
         "...) (nk_add_plugin does)"},
        {"undefined_symbol", "could not open: {file}: undefined symbol: nk_fixture_no_such_symbol"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.fixture);
        TempDir tmp;
        LogCapture logs("info");
        std::unique_ptr<runtime::Runtime> holder;
        runtime::Runtime* rt = nullptr;
        Status st = load_one(c.fixture, tmp, rt, holder);
        REQUIRE_FALSE(st.is_ok());
        std::string reason = c.reason;
        if (const auto at = reason.find("{file}"); at != std::string::npos)
            reason.replace(at, 6, (tmp / "modules" / (c.fixture + ".so")).string());
        CHECK(st.message() == expected_line(tmp, c.fixture + ".so", reason));
        CHECK(st.message().find('\n') == std::string::npos);
        CHECK(logs.contains(st.message()));
        CHECK(rt->module_count() == 0);  // nothing published
        CHECK_FALSE(rt->has_rpc("dropped"));
        CHECK(private_copies(tmp) == 0);
    }
}

TEST_CASE("not an ELF file and a truncated file are refused before dlopen") {
    TempDir tmp;
    fs::create_directories(tmp / "modules");
    {
        std::ofstream(tmp / "modules/notes.so") << "just text\n";
        runtime::Runtime rt(options_for(tmp), {});
        Status st = rt.load_all();
        CHECK(st.message() == expected_line(tmp, "notes.so", "not an ELF file"));
        fs::remove(tmp / "modules/notes.so");
    }
    {
        fs::copy_file(fixture("events_good"), tmp / "modules/cut.so");
        fs::resize_file(tmp / "modules/cut.so", fs::file_size(tmp / "modules/cut.so") * 2 / 3);
        runtime::Runtime rt(options_for(tmp), {});
        Status st = rt.load_all();
        REQUIRE_FALSE(st.is_ok());
        CHECK(st.message().rfind(expected_line(tmp, "cut.so", "truncated ELF file: "), 0) == 0);
    }
}

TEST_CASE("InitModule failure drops what it registered and calls the destroy callbacks") {
    // init_error registers an RPC with malloc'ed user data and a destroy that frees it;
    // under ASan a missing destroy would be reported as a leak.
    TempDir tmp;
    std::unique_ptr<runtime::Runtime> holder;
    runtime::Runtime* rt = nullptr;
    CHECK_FALSE(load_one("init_error", tmp, rt, holder).is_ok());
    CHECK_FALSE(rt->has_rpc("dropped"));
}

TEST_CASE("skip_failed_modules logs and continues with the good plugins") {
    TempDir tmp;
    install(tmp / "modules", {fixture("abi_major"), fixture("events_good"), fixture("no_init")});
    auto o = options_for(tmp);
    o.skip_failed_modules = true;
    LogCapture logs("info");
    runtime::Runtime rt(o, {});
    CHECK(rt.load_all().is_ok());
    CHECK(rt.module_count() == 1);
    CHECK(rt.has_rpc("echo"));
    auto reports = rt.reports();
    REQUIRE(reports.size() == 3);
    CHECK_FALSE(reports[0].loaded);  // abi_major.so (lexical order)
    CHECK(reports[1].loaded);        // events_good.so
    CHECK(reports[2].error == "missing InitModule function");
    CHECK(logs.contains("Failed to load runtime module " + (tmp / "modules/no_init.so").string() +
                        ": missing InitModule function (skipped: runtime.skip_failed_modules)"));
}

TEST_CASE("without skip_failed_modules the first failure stops loading") {
    TempDir tmp;
    install(tmp / "modules", {fixture("abi_major"), fixture("events_good")});
    runtime::Runtime rt(options_for(tmp), {});
    CHECK_FALSE(rt.load_all().is_ok());
    CHECK(rt.module_count() == 0);
    CHECK(rt.reports().size() == 1);
}

TEST_CASE("nkhost check: prints what each plugin registered, non-zero on any problem") {
    TempDir tmp;
    install(tmp / "modules", {fixture("events_good"), sample("c_minimal")});
    {
        std::ostringstream out;
        CHECK(runtime::run_check(options_for(tmp), out) == 0);
        const std::string text = out.str();
        CAPTURE(text);
        CHECK(text.find("OK   " + (tmp / "modules/events_good.so").string()) != std::string::npos);
        CHECK(text.find("rpc echo") != std::string::npos);
        CHECK(text.find("after UpdateAccount") != std::string::npos);
        CHECK(text.find("rpc c_echo") != std::string::npos);
        CHECK(text.find("2 plugin(s) checked, 0 problem(s)") != std::string::npos);
    }
    std::ofstream(tmp / "modules/broken.so") << "nope";
    install(tmp / "modules", {fixture("abi_minor")});
    {
        std::ostringstream out;
        CHECK(runtime::run_check(options_for(tmp), out) == 1);
        const std::string text = out.str();
        CAPTURE(text);
        CHECK(text.find("FAIL " + (tmp / "modules/broken.so").string() + ": not an ELF file") !=
              std::string::npos);
        CHECK(text.find("FAIL " + (tmp / "modules/abi_minor.so").string() +
                        ": ABI version mismatch") != std::string::npos);
        CHECK(text.find("4 plugin(s) checked, 2 problem(s)") != std::string::npos);
    }
}

TEST_CASE(
    "nkhost check: a refused registration is one FAIL line saying why (valid hook ids listed, NULL "
    "functions named)") {
    TempDir tmp;
    install(tmp / "modules",
            {fixture("events_good"), fixture("ignores_refusal"), fixture("empty_rpc_id"),
             fixture("null_handler"), fixture("null_rpc")});
    std::ostringstream out;
    CHECK(runtime::run_check(options_for(tmp), out) == 1);
    const std::string text = out.str();
    CAPTURE(text);
    auto line_of = [&](const std::string& start) {
        const auto pos = text.find(start);
        if (pos == std::string::npos)
            return std::string();
        return text.substr(pos, text.find('\n', pos) - pos);
    };
    const std::string hook = line_of("FAIL " + (tmp / "modules/ignores_refusal.so").string());
    CHECK(hook.find("InitModule returned OK after a registration was refused: register_before: "
                    "unknown hook id \"NoSuchApi\" (valid: " NK_API_AUTHENTICATE_DEVICE ", ") !=
          std::string::npos);
    CHECK(hook.find(NK_API_EVENT) != std::string::npos);
    CHECK(hook.find("fix the registration and return its error from InitModule") !=
          std::string::npos);
    const std::string rpc = line_of("FAIL " + (tmp / "modules/empty_rpc_id.so").string());
    CHECK(rpc.find("register_rpc: empty RPC id") != std::string::npos);
    CHECK(line_of("FAIL " + (tmp / "modules/null_handler.so").string())
              .find("register_event: no handler function (NULL)") != std::string::npos);
    CHECK(line_of("FAIL " + (tmp / "modules/null_rpc.so").string())
              .find("register_rpc \"reward\": no RPC function (NULL)") != std::string::npos);
    CHECK(text.find("OK   " + (tmp / "modules/events_good.so").string()) != std::string::npos);
    CHECK(text.find("5 plugin(s) checked, 4 problem(s)") != std::string::npos);
}

namespace {

bool sanitizer_tree_is_tsan() {
#if defined(__SANITIZE_THREAD__)
    return true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
    return true;
#else
    return false;
#endif
#else
    return false;
#endif
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
    return std::find(v.begin(), v.end(), s) != v.end();
}

// The dynamic entries of a 64/32-bit native ELF file, with the file offset of each.
#if UINTPTR_MAX == 0xffffffffffffffffULL
using TestEhdr = Elf64_Ehdr;
using TestPhdr = Elf64_Phdr;
using TestDyn = Elf64_Dyn;
#else
using TestEhdr = Elf32_Ehdr;
using TestPhdr = Elf32_Phdr;
using TestDyn = Elf32_Dyn;
#endif

// Offsets of the dynamic entries with tag `tag` in `bytes` (an ELF image).
std::vector<std::size_t> dyn_offsets(const std::string& bytes, std::int64_t tag) {
    TestEhdr eh;
    std::memcpy(&eh, bytes.data(), sizeof eh);
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < eh.e_phnum; ++i) {
        TestPhdr ph;
        std::memcpy(&ph, bytes.data() + eh.e_phoff + i * sizeof ph, sizeof ph);
        if (ph.p_type != PT_DYNAMIC)
            continue;
        for (std::size_t off = ph.p_offset; off + sizeof(TestDyn) <= ph.p_offset + ph.p_filesz;
             off += sizeof(TestDyn)) {
            TestDyn d;
            std::memcpy(&d, bytes.data() + off, sizeof d);
            if (d.d_tag == DT_NULL)
                break;
            if (d.d_tag == tag)
                out.push_back(off);
        }
    }
    return out;
}

// A copy of `bytes` with the value of every dynamic entry tagged `tag` set to `value`.
std::string with_dyn_value(std::string bytes, std::int64_t tag, std::uint64_t value) {
    for (const std::size_t off : dyn_offsets(bytes, tag)) {
        TestDyn d;
        std::memcpy(&d, bytes.data() + off, sizeof d);
        d.d_un.d_val = value;
        std::memcpy(bytes.data() + off, &d, sizeof d);
    }
    return bytes;
}

}  // namespace

TEST_CASE("ELF dynamic section: DT_NEEDED of real built files, executables, sanitizer runtimes") {
    runtime::ElfDynamicInfo info;
    REQUIRE(runtime::read_elf_dynamic(fixture("events_good"), info) == "");
    CHECK(contains(info.needed, "libc.so.6"));
    CHECK(contains(info.needed, "libstdc++.so.6"));
    CHECK_FALSE(info.pie);
    CHECK_FALSE(info.has_interp);

    REQUIRE(runtime::read_elf_dynamic(fixture("no_abi"), info) == "");
    CHECK(contains(info.needed, "libc.so.6"));
    CHECK_FALSE(contains(info.needed, "libstdc++.so.6"));  // a C plugin

    REQUIRE(runtime::read_elf_dynamic(fixture("pie_exe"), info) == "");
    CHECK(info.pie);
    CHECK(info.has_interp);

    // Built with the sanitizer this tree's host lacks: that runtime is in DT_NEEDED.
    const bool tsan = sanitizer_tree_is_tsan();
    const std::string other = tsan ? "libasan.so" : "libtsan.so";
    REQUIRE(runtime::read_elf_dynamic(fixture("sanitizer_other"), info) == "");
    const auto it = std::find_if(info.needed.begin(), info.needed.end(),
                                 [&](const std::string& n) { return n.rfind(other, 0) == 0; });
    REQUIRE(it != info.needed.end());
    const std::string refused = runtime::check_elf_image(fixture("sanitizer_other"));
    CHECK(refused ==
          fmt::format("built with {} (needs {}), which this nkhost was not built with: loading it "
                      "would abort the process; rebuild the plugin without {} (or run an nkhost "
                      "built with it)",
                      tsan ? "AddressSanitizer" : "ThreadSanitizer", *it,
                      tsan ? "-fsanitize=address" : "-fsanitize=thread"));
    CHECK(runtime::missing_sanitizer_runtime({"libc.so.6", *it}) == refused);

    // What this process has is accepted: the fixtures of a sanitizer tree need its runtime.
    runtime::ElfDynamicInfo good;
    REQUIRE(runtime::read_elf_dynamic(fixture("events_good"), good) == "");
    CHECK(runtime::missing_sanitizer_runtime(good.needed) == "");
    CHECK(runtime::check_elf_image(fixture("events_good")) == "");
    CHECK(runtime::missing_sanitizer_runtime({"libhwasan.so"}).rfind(
              "built with HWAddressSanitizer (needs libhwasan.so)", 0) == 0);
}

TEST_CASE("ELF dynamic section: offsets from the file are bounds-checked") {
    TempDir tmp;
    const std::string bytes = read_file(fixture("events_good"));
    REQUIRE_FALSE(dyn_offsets(bytes, DT_NEEDED).empty());
    REQUIRE(dyn_offsets(bytes, DT_STRTAB).size() == 1);
    struct Case {
        std::int64_t tag;
        std::uint64_t value;
        std::string reason;
    };
    const std::vector<Case> cases = {
        {DT_NEEDED, 0xfffffff0u, "ELF DT_NEEDED entry points outside the string table"},
        {DT_STRTAB, 0x7fffffffffffull, "ELF dynamic string table lies outside the file"},
        {DT_STRSZ, 1ull << 40, "ELF dynamic string table too large (1099511627776 bytes)"},
        {DT_STRSZ, 0, "ELF dynamic section has DT_NEEDED entries but no string table"},
    };
    for (const auto& c : cases) {
        CAPTURE(c.reason);
        const fs::path file = tmp / "bad.so";
        std::ofstream(file, std::ios::binary | std::ios::trunc) << with_dyn_value(bytes, c.tag, c.value);
        runtime::ElfDynamicInfo info;
        CHECK(runtime::read_elf_dynamic(file, info) == c.reason);
        CHECK(runtime::check_elf_image(file) == c.reason);
    }
    // A string table whose last name runs to its end without a terminator.
    const auto strsz = dyn_offsets(bytes, DT_STRSZ);
    REQUIRE(strsz.size() == 1);
    TestDyn d;
    std::memcpy(&d, bytes.data() + strsz[0], sizeof d);
    for (std::uint64_t cut = 1; cut < 64 && cut < d.d_un.d_val; ++cut) {
        const fs::path file = tmp / "cut.so";
        std::ofstream(file, std::ios::binary | std::ios::trunc)
            << with_dyn_value(bytes, DT_STRSZ, d.d_un.d_val - cut);
        runtime::ElfDynamicInfo info;
        const std::string why = runtime::read_elf_dynamic(file, info);
        CHECK((why == "" || why == "ELF DT_NEEDED name is not terminated" ||
               why == "ELF DT_NEEDED entry points outside the string table"));
    }
}

TEST_CASE("nkhost check: a missing runtime.path is a failure and is not created") {
    TempDir tmp;
    std::ostringstream out;
    CHECK(runtime::run_check(options_for(tmp), out) == 1);
    CHECK(out.str() == "FAIL runtime.path " + (tmp / "modules").string() +
                           " does not exist\n0 plugin(s) checked, 1 problem(s)\n");
    CHECK_FALSE(fs::exists(tmp / "modules"));
    std::ofstream(tmp / "file") << "x";
    auto o = options_for(tmp);
    o.path = (tmp / "file").string();
    std::ostringstream out2;
    CHECK(runtime::run_check(o, out2) == 1);
    CHECK(out2.str().rfind("FAIL runtime.path " + (tmp / "file").string() +
                               " is not a directory\n", 0) == 0);
}

TEST_CASE("nkhost check: prints loading before each plugin; copies never go under data_dir") {
    TempDir tmp;
    install(tmp / "modules", {fixture("events_good"), fixture("helper_lib")});
    std::ostringstream out;
    CHECK(runtime::run_check(options_for(tmp), out) == 1);
    const std::string text = out.str();
    CAPTURE(text);
    const std::string good = (tmp / "modules/events_good.so").string();
    const std::string helper = (tmp / "modules/helper_lib.so").string();
    const auto l1 = text.find("loading " + good + "\n");
    const auto l2 = text.find("loading " + helper + "\n");
    REQUIRE(l1 != std::string::npos);
    REQUIRE(l2 != std::string::npos);
    CHECK(l1 < l2);
    CHECK(text.find("FAIL " + helper + ": not a plugin") != std::string::npos);
    CHECK_FALSE(fs::exists(tmp / ".modules"));
}

TEST_CASE("the same RPC id from two modules: the later serves, a warning names both, check fails") {
    TempDir tmp;
    install(tmp / "modules", {fixture("events_good"), fixture("rpc_duplicate")});
    LogCapture logs("info");
    {
        runtime::Runtime rt(options_for(tmp), {});
        REQUIRE(rt.load_all().is_ok());
        std::string out;
        REQUIRE(rt.rpc("Echo", RequestContext{}, "x", out).is_ok());
        CHECK(out == "from rpc_duplicate");
        const auto conflicts = rt.rpc_conflicts();
        REQUIRE(conflicts.size() == 1);
        CHECK(conflicts[0].id == "echo");
        CHECK(conflicts[0].earlier == tmp / "modules/events_good.so");
        CHECK(conflicts[0].later == tmp / "modules/rpc_duplicate.so");
        const std::string warning =
            "RPC id \"echo\" is registered by module events_good (" +
            (tmp / "modules/events_good.so").string() + ") and by module rpc_duplicate (" +
            (tmp / "modules/rpc_duplicate.so").string() +
            "); rpc_duplicate replaces it (the later module wins), so events_good's RPC echo is "
            "never called: rename one of them";
        CHECK(logs.contains(warning));
        // A later publish with the same conflict (another module loads) does not repeat it.
        install(tmp / "modules", {sample("c_minimal")});
        rt.rescan();
        CHECK(rt.module_count() == 3);
        CHECK(rt.rpc_conflicts().size() == 1);
        const std::string text = logs.text();
        CHECK(text.find(warning) == text.rfind(warning));
        fs::remove(tmp / "modules/rpc_duplicate.so");
        rt.rescan();
        CHECK(rt.rpc_conflicts().empty());
        REQUIRE(rt.rpc("echo", RequestContext{}, "x", out).is_ok());
        CHECK(out == "x");
    }
    install(tmp / "modules", {fixture("rpc_duplicate")});
    std::ostringstream out;
    CHECK(runtime::run_check(options_for(tmp), out) == 1);
    CHECK(out.str().find("FAIL " + (tmp / "modules/rpc_duplicate.so").string() +
                         ": RPC id \"echo\" is also registered by " +
                         (tmp / "modules/events_good.so").string()) != std::string::npos);
    CHECK(out.str().find("3 plugin(s) checked, 1 problem(s)") != std::string::npos);
}

TEST_CASE("a plugin with helper libraries in a hidden .lib folder beside it loads and uses them") {
    TempDir tmp;
    const fs::path built = fixture("uses_helper").parent_path();
    fs::create_directories(tmp / "modules/shop");
    fs::copy_file(built / "uses_helper.so", tmp / "modules/shop/uses_helper.so");
    fs::copy(built / ".lib", tmp / "modules/shop/.lib",
             fs::copy_options::recursive | fs::copy_options::copy_symlinks);
    {
        runtime::Runtime rt(options_for(tmp), {});
        REQUIRE(rt.load_all().is_ok());
        const auto reports = rt.reports();
        REQUIRE(reports.size() == 1);  // the helper is not taken for a plugin
        CHECK(reports[0].path == tmp / "modules/shop/uses_helper.so");
        std::string out;
        REQUIRE(rt.rpc("helper_price", RequestContext{}, "", out).is_ok());
        CHECK(out == "43");  // computed by libnkprice.so.1 from the .lib folder
        // The private copy has a folder of its own with a copy of .lib beside it ($ORIGIN/.lib).
        std::size_t folders = 0;
        for (const auto& e : fs::directory_iterator(tmp / ".modules")) {
            CHECK(e.path().extension() == ".d");
            CHECK(fs::exists(e.path() / "uses_helper.so"));
            CHECK(fs::exists(e.path() / ".lib/libnkprice.so.1"));
            ++folders;
        }
        CHECK(folders == 1);
        std::ostringstream check_out;
        CHECK(runtime::run_check(options_for(tmp), check_out) == 0);
        CAPTURE(check_out.str());
        CHECK(check_out.str().find("rpc helper_price") != std::string::npos);
    }
    CHECK(private_copies(tmp) == 0);  // unloaded: the folder is removed with its .lib copy

    // Without its .lib the plugin cannot be opened: $ORIGIN/.lib is where it looks.
    fs::remove_all(tmp / "modules/shop/.lib");
    runtime::Runtime rt(options_for(tmp), {});
    Status st = rt.load_all();
    REQUIRE_FALSE(st.is_ok());
    CHECK(st.message().find("libnkprice.so.1") != std::string::npos);
    CHECK(private_copies(tmp) == 0);
}

TEST_CASE("a stale private folder of a process that is gone is swept at startup") {
    TempDir tmp;
    // PID 2^22+1 is above Linux's pid_max limit: no such process.
    const fs::path stale = tmp / ".modules/uses_helper.4194305.3.d";
    fs::create_directories(stale / ".lib");
    std::ofstream(stale / "uses_helper.so") << "x";
    std::ofstream(stale / ".lib/libnkprice.so.1") << "x";
    const fs::path other = tmp / ".modules/notes.d";  // not named like a copy: kept
    fs::create_directories(other);
    CHECK(runtime::remove_stale_module_copies(tmp / ".modules") == 1);
    CHECK_FALSE(fs::exists(stale));
    CHECK(fs::exists(other));
}
