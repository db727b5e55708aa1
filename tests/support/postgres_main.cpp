// nk_test_postgres_server: a PostgreSQL server for test harnesses that are not C++ (the
// end-to-end suites). Starts the server (tests/support/postgres.hpp), prints the address of one
// fresh database on stdout, and runs until stdin closes; then stops the server.
#include <cstdio>
#include <exception>
#include <iostream>
#include <string>

#include "support/postgres.hpp"

int main() {
    try {
        auto& server = nk::test::PostgresServer::shared();
        std::cout << server.create_database() << std::endl;
        std::string line;
        while (std::getline(std::cin, line)) {
            // "database": one more fresh database.
            if (line == "database")
                std::cout << server.create_database() << std::endl;
        }
        return 0;
    } catch (const std::exception& e) {
        std::cerr << "nk_test_postgres_server: " << e.what() << "\n";
        return 1;
    }
}
