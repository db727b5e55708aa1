// The loader against real plugins: discovery, ELF validation, ABI checks,
// InitModule failures (one fixture per failure mode), private copies.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "nk/sdk.h"
#include "runtime/check.hpp"
#include "runtime/elf_check.hpp"
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
    runtime::Runtime rt(options_for(tmp), {});
    CHECK(rt.load_all().is_ok());
    CHECK(fs::is_directory(tmp / "modules"));
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
    };
    for (const auto& c : cases) {
        CAPTURE(c.fixture);
        TempDir tmp;
        LogCapture logs("info");
        std::unique_ptr<runtime::Runtime> holder;
        runtime::Runtime* rt = nullptr;
        Status st = load_one(c.fixture, tmp, rt, holder);
        REQUIRE_FALSE(st.is_ok());
        CHECK(st.message() == expected_line(tmp, c.fixture + ".so", c.reason));
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

TEST_CASE("nkhost check: a refused registration is one FAIL line saying why (valid hook ids listed)") {
    TempDir tmp;
    install(tmp / "modules",
            {fixture("events_good"), fixture("ignores_refusal"), fixture("empty_rpc_id")});
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
    CHECK(text.find("OK   " + (tmp / "modules/events_good.so").string()) != std::string::npos);
    CHECK(text.find("3 plugin(s) checked, 2 problem(s)") != std::string::npos);
}
