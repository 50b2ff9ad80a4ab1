% nothing but comments
%{
block
%}
