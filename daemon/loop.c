/* loop: being written */
