// Reads a checkpoint when given one; otherwise proves the headers compile and link.
#include <statedict/statedict.hpp>

#include <iostream>

int main(int argc, char** argv) {
  std::cout << "statedict " << statedict::version_string << "\n";
  if (argc > 1) std::cout << statedict::read(argv[1]).tensors().size() << " tensors\n";
  return 0;
}
