module github.com/mailtee/mailtee

go 1.26.8
